"""Speed benchmarks of jaxconv against its torch twins (see benchmarks/README.md)."""
