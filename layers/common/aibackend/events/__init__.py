"""Event plumbing shared by both topologies: AWS event shapes, EventBridge patterns, schedules."""
