"""Typed xDLMS APDUs in their unciphered A-XDR form.

Each class is a frozen dataclass with ``to_bytes()`` and ``from_bytes(data)``;
``from_bytes`` insists on the class's own tag and on the data ending exactly
where the APDU ends. ``invoke_id_and_priority`` is kept as the raw byte (bit 7
high priority, bit 6 confirmed, bits 0-3 invoke id) so odd values round-trip;
build one with :func:`make_invoke_id_and_priority`.
"""

from metercert.cosem.xdlms.action import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    ActionResultWithData,
)
from metercert.cosem.xdlms.base import (
    DEFAULT_INVOKE_ID_AND_PRIORITY,
    AttributeReference,
    CosemAttributeDescriptor,
    CosemMethodDescriptor,
    DataResult,
    SelectiveAccess,
    XdlmsApdu,
    make_invoke_id_and_priority,
)
from metercert.cosem.xdlms.failure import ConfirmedServiceError, ExceptionResponse
from metercert.cosem.xdlms.get import (
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
    GetResponseWithList,
)
from metercert.cosem.xdlms.initiate import (
    VAA_NAME_LN,
    VAA_NAME_SN,
    InitiateRequest,
    InitiateResponse,
)
from metercert.cosem.xdlms.notification import DataNotification, EventNotificationRequest
from metercert.cosem.xdlms.set import (
    SetRequestNormal,
    SetRequestWithDatablock,
    SetRequestWithFirstDatablock,
    SetRequestWithList,
    SetResponseDatablock,
    SetResponseLastDatablock,
    SetResponseNormal,
    SetResponseWithList,
)

__all__ = [
    "DEFAULT_INVOKE_ID_AND_PRIORITY",
    "VAA_NAME_LN",
    "VAA_NAME_SN",
    "ActionRequestNextPblock",
    "ActionRequestNormal",
    "ActionRequestWithFirstPblock",
    "ActionRequestWithList",
    "ActionRequestWithPblock",
    "ActionResponseNextPblock",
    "ActionResponseNormal",
    "ActionResponseWithList",
    "ActionResponseWithPblock",
    "ActionResultWithData",
    "AttributeReference",
    "ConfirmedServiceError",
    "CosemAttributeDescriptor",
    "CosemMethodDescriptor",
    "DataNotification",
    "DataResult",
    "EventNotificationRequest",
    "ExceptionResponse",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponseNormal",
    "GetResponseWithDatablock",
    "GetResponseWithList",
    "InitiateRequest",
    "InitiateResponse",
    "SelectiveAccess",
    "SetRequestNormal",
    "SetRequestWithDatablock",
    "SetRequestWithFirstDatablock",
    "SetRequestWithList",
    "SetResponseDatablock",
    "SetResponseLastDatablock",
    "SetResponseNormal",
    "SetResponseWithList",
    "XdlmsApdu",
    "make_invoke_id_and_priority",
]
