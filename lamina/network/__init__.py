"""Container networks (Docker's CNM): network records and IPAM, endpoints, sandboxes."""
