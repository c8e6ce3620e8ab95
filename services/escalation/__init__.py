"""Escalation: deadlines, the escalation ladder and the whistle protocol (吹哨报到)."""

SOURCE = "whistle/escalation"
"""The CloudEvents ``source`` of every event escalation produces: with the event id, the key
every consumer's inbox deduplicates on, so the clocks, the scheduler, the recount and the APIs
all name the service the same way."""
