"""The ``mcdose`` command-line application (thin: it composes mcdose and residualnet)."""
