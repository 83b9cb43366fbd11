"""Case files (HDF5), image files (SimpleITK) and DICOM."""
