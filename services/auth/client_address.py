"""Whose sign-in is this: the client address a sign-in or sign-up is counted against.

The gateway knows the browser's address and sends it as `x-dropfile-client-address`
metadata, together with the service credential (`x-dropfile-service-token`). Only that pair
is believed: any other caller could name any address and so escape every per-address
limit, so without the credential the address is the gRPC connection's own peer."""

from __future__ import annotations

import hmac
import ipaddress
import logging

import grpc

from services.common.grpc_server import SERVICE_TOKEN_HEADER, metadata_of

CLIENT_ADDRESS_HEADER = "x-dropfile-client-address"

log = logging.getLogger(__name__)


def peer_address(peer: str) -> str:
    """The IP address in a gRPC peer string (`ipv4:10.0.0.7:50312`, `ipv6:[::1]:50312`);
    other kinds (`unix:...`) as they are."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        return host.strip("[]").split("%", 1)[0]
    return peer


class ClientAddresses:
    def __init__(self, service_token: str) -> None:
        self._service_token = service_token.encode()

    def of(self, context: grpc.ServicerContext) -> str:
        metadata = metadata_of(context)
        forwarded = metadata.get(CLIENT_ADDRESS_HEADER)
        if forwarded:
            presented = metadata.get(SERVICE_TOKEN_HEADER, "").encode()
            if presented and hmac.compare_digest(presented, self._service_token):
                try:
                    return str(ipaddress.ip_address(forwarded.strip()))
                except ValueError:
                    pass  # not an address: the connection's own is used
            else:
                # A caller choosing its address, or a gateway whose SERVICE_TOKEN differs
                # from auth's: then every user would share the gateway's address.
                log.warning(
                    "client address metadata without the service credential: "
                    "ignored, counting the connection's address"
                )
        return peer_address(context.peer() or "")
