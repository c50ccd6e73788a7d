"""Publish Python distributions through trusted publishing, from a GitHub Actions job."""
