"""What `training/`, `service/` and a client share: the artifact's metadata
(`contract.metadata`), frequencies and forecast timestamps (`contract.frequency`), and
the rows of the long-format CSV files (`contract.long_csv`).

It imports only the runtime's dependencies (pydantic and the standard library), never
`training/` or `service/`; `contract.frequency` needs the standard library alone.
"""
