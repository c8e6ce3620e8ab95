"""Intake: accepts tips from every channel and tells citizens where their tip stands."""

SOURCE = "whistle/intake"
"""The CloudEvents ``source`` of every event intake produces: with the event id, the key every
consumer's inbox deduplicates on, so acceptance, ratings and supplements name intake alike."""
