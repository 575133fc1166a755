"""What you run: the worker process, the embedded dev stack and the `signoff` CLI."""
