"""Intake: access codes as a keyed hash, and wrong codes counted per tracking number and per
guessing address (services/intake/tracking.py, services/intake/access_codes.py).

Hashes stored before are bare SHA-256 of the tip id and the code: they are marked
``sha256:<hex>`` here and still verify; intake stores ``hmac-sha256:<hex>`` in their place on
the first right code. Wrong codes are counted in access_code_guard from now on, per number and
per address; none is carried over from rate_counter (every key starts with its allowance).

Downgrading unmarks the old hashes; a keyed one cannot be turned back into a bare one (the
code is not known here), so after a downgrade such a tip opens only once upgraded again.

Revision ID: intake_0009_access_codes
Revises: intake_0008_wechat_nonces
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0009_access_codes"
down_revision = "intake_0008_wechat_nonces"


def upgrade() -> None:
    op.create_table(
        "access_code_guard",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.execute(
        "UPDATE tip SET access_code_hash = 'sha256:' || access_code_hash "
        "WHERE access_code_hash NOT LIKE '%:%'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE tip SET access_code_hash = substr(access_code_hash, 8) "
        "WHERE access_code_hash LIKE 'sha256:%'"
    )
    op.drop_table("access_code_guard")
