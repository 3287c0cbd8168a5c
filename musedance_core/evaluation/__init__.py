"""Measuring generated dances (beat alignment metrics, optical flow). Generation never imports this package."""
