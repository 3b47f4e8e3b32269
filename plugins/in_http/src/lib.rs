//! HTTP input: the self-hosted tracking API.
