"""Who issued a person's live credential (the enrolment secret of an add or a reset): the
two-person rule keeps that admin out of the person's sensitive grants.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.add_column(sa.Column("credential_issued_by", sa.String(64), nullable=True))
    # Existing people: whoever added them saw their first secret (a later reset is not on record
    # here; the security log has it). The local operator is never counted as an issuer.
    op.execute(
        "UPDATE principals SET credential_issued_by = created_by "
        "WHERE kind = 'person' AND created_by NOT LIKE 'operator:%' AND created_by NOT LIKE 'job:%'"
    )


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("credential_issued_by")
