"""imagemill: a self-hosted image-generation service."""
