"""The realtime table loop: sources -> vision -> scheduler -> inference -> blend -> display."""
