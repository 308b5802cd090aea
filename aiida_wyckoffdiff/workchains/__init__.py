"""AiiDA workflows of the package."""
