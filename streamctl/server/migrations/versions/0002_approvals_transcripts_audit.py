"""Part 2 schema: approvals and reviews, transcript sessions/events/index, audit events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("requester", sa.String(200), nullable=False),
        sa.Column("topics", sa.JSON, nullable=False),
        sa.Column("operations", sa.JSON, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("window_start", TS, nullable=False),
        sa.Column("window_end", TS, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("approver_roles", sa.JSON, nullable=False),
        sa.Column("reason_required", sa.Boolean, nullable=False),
        sa.Column("reviewers", sa.JSON, nullable=False),
        sa.Column("decided_at", TS, nullable=True),
    )
    op.create_index("ix_approvals_requester", "approvals", ["requester"])
    op.create_index("ix_approvals_status", "approvals", ["status"])
    op.create_table(
        "approval_reviews",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "approval_id",
            sa.String(64),
            sa.ForeignKey("approvals.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("approval_id", "reviewer", name="uq_review_once"),
    )
    op.create_index("ix_approval_reviews_approval_id", "approval_reviews", ["approval_id"])
    op.create_table(
        "transcript_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=True),
        sa.Column("next_seq", sa.Integer, nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("counts", sa.JSON, nullable=True),
    )
    op.create_index("ix_transcript_sessions_grant_id", "transcript_sessions", ["grant_id"])
    op.create_index("ix_transcript_sessions_subject", "transcript_sessions", ["subject"])
    op.create_index("ix_transcript_sessions_started_at", "transcript_sessions", ["started_at"])
    op.create_table(
        "transcript_events",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("transcript_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("link", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "transcript_topics",
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("transcript_sessions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("topic", sa.String(255), primary_key=True),
    )
    op.create_index("ix_transcript_topics_topic", "transcript_topics", ["topic"])
    op.create_table(
        "transcript_offsets",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column(
            "session_id",
            sa.String(64),
            sa.ForeignKey("transcript_sessions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("first_offset", sa.BigInteger, nullable=False),
        sa.Column("last_offset", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_transcript_offsets_session_id", "transcript_offsets", ["session_id"])
    op.create_index(
        "ix_transcript_offsets_lookup",
        "transcript_offsets",
        ["topic", "partition", "kind", "first_offset"],
    )
    op.create_table(
        "audit_events",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_events_ts", "audit_events", ["ts"])
    op.create_index("ix_audit_events_kind", "audit_events", ["kind"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("transcript_offsets")
    op.drop_table("transcript_topics")
    op.drop_table("transcript_events")
    op.drop_table("transcript_sessions")
    op.drop_table("approval_reviews")
    op.drop_table("approvals")
