"""Offline direction finding and editing on generators returned by models.load."""
