"""Parsers of the package's CalcJobs: they read only retrieved files and never let an exception escape."""
