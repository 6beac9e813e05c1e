//! Virtual disks (VHDX, VHD fixed and dynamic, or a raw disk) and their partition tables.
