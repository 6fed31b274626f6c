"""Presentation: formatting, reports and plots of solved designs."""
