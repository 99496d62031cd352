"""Credential providers: adapters get a :class:`~app.secret.Secret`, never fetch one themselves."""

from app.credentials.vault import CredentialProvider, VaultCredentials

__all__ = ["CredentialProvider", "VaultCredentials"]
