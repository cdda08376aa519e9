"""Camera, display and table profiles (YAML) and the camera-control adapter."""
