"""The ``[kafka]`` section every service's settings file shares."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from i24net.kafka.admin import KafkaConnection


class KafkaSettings(BaseModel):
    """Where the broker is and how to authenticate (TLS + SCRAM in production)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap: str = Field(description="host:port[,host:port...] of the brokers")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = Field(None, description="e.g. SCRAM-SHA-512")
    username: str | None = Field(None, description="the SCRAM user (the station code)")
    password_file: Path | None = Field(
        None, description="one line holding the SASL password; mode 0600 (others refused)"
    )
    ca_file: Path | None = Field(None, description="PEM CA that signed the brokers' certificates")

    def connection(self, client_id: str) -> KafkaConnection:
        """The client connection; reads the password file now (clear error if unsafe)."""
        from i24net.kafka.security import read_password_file

        password = None if self.password_file is None else read_password_file(self.password_file)
        return KafkaConnection(
            bootstrap=self.bootstrap,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            username=self.username,
            password=password,
            ca_file=self.ca_file,
            client_id=client_id,
        )
