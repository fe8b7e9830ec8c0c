"""Feedback store backends behind :class:`candor.server.core.store.FeedbackStore`: SQLite (embedded)."""
