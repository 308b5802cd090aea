"""AiiDA processes: calculation jobs that run the ``wyckoffdiff`` command line, and calcfunctions."""
