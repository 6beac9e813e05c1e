VHD (example placeholder)
