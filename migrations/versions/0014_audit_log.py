"""the append-only audit log (issue #33 item 5)

Revision ID: 0014
Revises: 0013

Who created or cancelled audits and who changed policies, keys or teams. The database itself
refuses to change or remove an entry: a trigger aborts every UPDATE and DELETE (and, on
PostgreSQL, TRUNCATE). No foreign keys: nothing deleted elsewhere can cascade into the log.

The triggers bind every role, the table's owner too; but the owner can disable or drop them
(ALTER TABLE ... DISABLE TRIGGER, DROP TRIGGER, DROP TABLE), as can anyone who may write the
SQLite file. The owner is whoever ran this migration: where that is the service's own role, the
log is append-only against mistakes, not against that role. README's "Audit log" section says
how to make it tamper-proof on PostgreSQL (a separate owner role; UPDATE, DELETE and TRUNCATE
revoked from the service's).

The downgrade drops the table: it is refused while the log holds entries, unless
MEMAUDIT_MIGRATE_DROP_AUDIT_LOG=1 says they were exported and may go.

A later migration that rebuilds this table on SQLite (a batch operation copies the table and
drops the old one) must create the triggers again.
"""

import os

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLE = "audit_log"
REFUSAL = "audit_log is append-only"
ALLOW_DROP = "MEMAUDIT_MIGRATE_DROP_AUDIT_LOG"

POSTGRES_UP = [
    f"""
    CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{REFUSAL}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"""
    CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE PROCEDURE audit_log_refuse_change()
    """,
    f"""
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE PROCEDURE audit_log_refuse_change()
    """,
]
POSTGRES_DOWN = ["DROP FUNCTION IF EXISTS audit_log_refuse_change()"]  # after the table

SQLITE_UP = [
    f"""
    CREATE TRIGGER audit_log_no_{op_name.lower()} BEFORE {op_name} ON {TABLE}
    BEGIN SELECT RAISE(ABORT, '{REFUSAL}: {op_name} refused'); END
    """
    for op_name in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=True),
        sa.Column("actor_name", sa.String(200), nullable=False),
        sa.Column("actor_kind", sa.String(32), nullable=False),
        sa.Column("actor_team_id", sa.String(32), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("client", sa.String(100), nullable=True),
    )
    op.create_index("ix_audit_log_created_at", TABLE, ["created_at"])
    op.create_index("ix_audit_log_actor", TABLE, ["actor_id", "id"])
    op.create_index("ix_audit_log_action", TABLE, ["action", "id"])
    op.create_index("ix_audit_log_target", TABLE, ["target_type", "target_id", "id"])
    dialect = op.get_bind().dialect.name
    triggers = {"postgresql": POSTGRES_UP, "sqlite": SQLITE_UP}
    if dialect not in triggers:  # a log anyone could rewrite is not an audit log
        raise NotImplementedError(f"no append-only trigger for {dialect}")
    for statement in triggers[dialect]:
        op.execute(statement)


def downgrade() -> None:
    entries = op.get_bind().scalar(sa.text(f"SELECT count(*) FROM {TABLE}"))
    if entries and os.environ.get(ALLOW_DROP) != "1":
        raise CommandError(
            f"{TABLE} holds {entries} entries, which a downgrade below 0014 would drop with the "
            f"table: export them first (GET /v1/audit-log, or the table itself), then run the "
            f"downgrade again with {ALLOW_DROP}=1"
        )
    # Dropping the table drops its triggers (DROP runs no row trigger on either database).
    op.drop_table(TABLE)
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRES_DOWN:
            op.execute(statement)
