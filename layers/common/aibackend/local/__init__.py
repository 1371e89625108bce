"""The local runtime (`aib dev`): the same functions, the same AWS event shapes, one machine."""
