"""Access: a leaver's date on the account (`principals.leaving_at`).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("principals", sa.Column("leaving_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("principals", "leaving_at")
