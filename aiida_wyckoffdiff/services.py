"""The PostgreSQL server and RabbitMQ broker behind a production profile, as ``scripts/services.sh`` sets them up.

A ``core.psql_dos`` profile needs a database of its own; the tests and ``benchmarks/load.py`` create
one per run with the role the script creates and drop it afterwards. The role and the servers'
addresses come from the environment, so the same code runs against any server.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

__all__ = ['PostgresServer', 'rabbitmq_broker_config', 'unreachable_services']


@dataclass(frozen=True)
class PostgresServer:
    """Where PostgreSQL listens and the role that may create databases there (``WYCKOFFDIFF_PG_*``)."""

    host: str = 'localhost'
    port: int = 5432
    username: str = 'aiida_wyckoffdiff'
    password: str = 'aiida_wyckoffdiff'

    @classmethod
    def from_environment(cls) -> PostgresServer:
        defaults = cls()
        return cls(
            host=os.environ.get('WYCKOFFDIFF_PG_HOST', defaults.host),
            port=int(os.environ.get('WYCKOFFDIFF_PG_PORT', defaults.port)),
            username=os.environ.get('WYCKOFFDIFF_PG_USER', defaults.username),
            password=os.environ.get('WYCKOFFDIFF_PG_PASSWORD', defaults.password),
        )

    def execute(self, statement: str) -> None:
        """Run one statement outside a transaction (``CREATE DATABASE`` and ``DROP DATABASE`` must)."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.username, password=self.password,
                             dbname='postgres', autocommit=True, connect_timeout=5) as connection:
            connection.execute(statement)

    def create_database(self, name: str) -> dict[str, object]:
        """Create database ``name`` owned by the role; returns the storage configuration of ``core.psql_dos``."""
        from psycopg import sql

        self.execute(sql.SQL('CREATE DATABASE {}').format(sql.Identifier(name)).as_string())
        return {'database_engine': 'postgresql_psycopg', 'database_hostname': self.host, 'database_port': self.port,
                'database_username': self.username, 'database_password': self.password, 'database_name': name}

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, closing connections a daemon worker may still hold."""
        from psycopg import sql

        self.execute(sql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(sql.Identifier(name)).as_string())

    def fetch_one(self, database: str, statement: str, parameters: tuple = ()) -> object:
        """The first column of the first row ``statement`` returns in ``database``."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=self.username, password=self.password,
                             dbname=database, connect_timeout=5) as connection:
            return connection.execute(statement, parameters).fetchone()[0]

    def database_size(self, database: str) -> int:
        """Bytes the database takes on disk."""
        return self.fetch_one(database, 'SELECT pg_database_size(current_database())')


def rabbitmq_broker_config() -> dict[str, object]:
    """The ``core.rabbitmq`` broker settings of a local RabbitMQ (its default ``guest`` account, localhost only)."""
    return {'broker_protocol': 'amqp', 'broker_username': 'guest', 'broker_password': 'guest',
            'broker_host': os.environ.get('WYCKOFFDIFF_RABBITMQ_HOST', '127.0.0.1'),
            'broker_port': int(os.environ.get('WYCKOFFDIFF_RABBITMQ_PORT', 5672)), 'broker_virtual_host': ''}


def unreachable_services(server: PostgresServer | None = None) -> list[str]:
    """Why PostgreSQL or RabbitMQ cannot be used, one line each; empty when both answer."""
    import psycopg

    server = server or PostgresServer.from_environment()
    problems = []
    try:
        server.execute('SELECT 1')
    except psycopg.Error as exception:
        problems.append(f'PostgreSQL at {server.host}:{server.port} as {server.username}: {str(exception).strip()}')
    broker = rabbitmq_broker_config()
    try:
        socket.create_connection((broker['broker_host'], broker['broker_port']), timeout=5).close()
    except OSError as exception:
        problems.append(f'RabbitMQ at {broker["broker_host"]}:{broker["broker_port"]}: {exception}')
    return problems
