"""dcgm."""
