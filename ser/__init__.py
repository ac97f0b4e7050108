"""Library of the pipeline: reusable code without flags, imported by the top-level scripts."""
