"""aiida-wyckoffdiff: symmetry-aware conditional crystal generation as AiiDA workflows."""

__version__ = "0.1.0"
