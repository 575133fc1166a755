"""Alembic environment: runs on the connection `activities.db.migrate()` hands over."""

from alembic import context

from activities.db import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
