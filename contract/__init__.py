"""What `training/`, `service/` and a client share: the artifact's metadata and time steps.

It imports only the runtime's dependencies (pydantic and the standard library), never
`training/` or `service/`; `contract.frequency` needs the standard library alone.
"""
