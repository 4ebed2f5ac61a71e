"""Errors a DLMS client reports."""

from metercert.errors import ConnectionFailed, MetercertError


class DlmsError(MetercertError):
    """The meter answered, but not as the request needed."""


class AssociationRejected(DlmsError):
    def __init__(self, result: int, diagnostic: object) -> None:
        name = getattr(diagnostic, "name", str(diagnostic)).lower().replace("_", "-")
        super().__init__(f"association rejected (result {result}, diagnostic {name})")
        self.result = result
        self.diagnostic = diagnostic


class ExceptionResponseReceived(DlmsError):
    def __init__(self, state_error: object, service_error: object, counter: int | None) -> None:
        s = getattr(service_error, "name", str(service_error)).lower().replace("_", "-")
        super().__init__(f"meter answered exception-response ({s})")
        self.state_error = state_error
        self.service_error = service_error
        self.counter = counter


class DataAccessFailed(DlmsError):
    def __init__(self, what: str, result: object) -> None:
        name = getattr(result, "name", str(result)).lower().replace("_", "-")
        super().__init__(f"{what}: {name}")
        self.result = result


class ResponseNotTrusted(DlmsError):
    """A response failed verification, came from the wrong system title or replayed a counter."""


class NoResponse(ConnectionFailed):
    """The meter closed the connection or stayed silent."""
