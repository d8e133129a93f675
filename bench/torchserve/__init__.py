"""The TorchServe contender: its handler (archived into the .mar), configuration and logging."""
