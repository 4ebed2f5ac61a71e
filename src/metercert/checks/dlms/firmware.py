"""DLMS checks. Signed firmware: bad images refused, a genuine image accepted."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from metercert.checks.base import (
    CheckOutcome,
    Severity,
    TargetKind,
    check,
    fail,
    inconclusive,
    not_applicable,
    passed,
)
from metercert.checks.dlms._common import (
    FIRMWARE_ID,
    IMAGE_TRANSFER,
    _probe,
    _trace,
    _with_management,
)
from metercert.client.errors import (
    DlmsError,
)
from metercert.client.session import DlmsClient
from metercert.client.target import DlmsTarget
from metercert.cosem import (
    ActionResult,
    DlmsData,
    ObisCode,
)
from metercert.cosem.image_transfer import ImageTransferStatus
from metercert.security.firmware_image import build_signed_image

# -- firmware --------------------------------------------------------------------------------


async def _await_image_status(c: DlmsClient, busy: int, done: int, failed: int,
                              timeout: float, obj: ObisCode = IMAGE_TRANSFER) -> ActionResult:
    """Meters that check an image in the background answer temporary-failure and show
    the outcome later in image_transfer_status: poll it until it leaves ``busy``."""
    deadline = time.monotonic() + timeout
    while True:
        status = int((await c.get(18, obj, 6)).value)
        if status == done:
            c.trace.note(f"image_transfer_status {status}: done")
            return ActionResult.SUCCESS
        if status == failed or status != busy:
            c.trace.note(f"image_transfer_status {status}: not done")
            return ActionResult.OTHER_REASON
        if time.monotonic() >= deadline:
            c.trace.note(f"image_transfer_status still {status} after {timeout:g} s")
            return ActionResult.TEMPORARY_FAILURE
        await asyncio.sleep(min(0.25, timeout / 20))


async def _transfer_image(c: DlmsClient, image: bytes, ident: bytes, *, activate: bool = True,
                          timeout: float = 60.0, obj: ObisCode = IMAGE_TRANSFER,
                          ) -> tuple[ActionResult, ActionResult | None]:
    block = int((await c.get(18, obj, 2)).value)
    res, _ = await c.action(18, obj, 1, DlmsData.structure(
        [DlmsData.octet_string(ident), DlmsData.double_long_unsigned(len(image))]))
    if res is not ActionResult.SUCCESS:
        raise DlmsError(f"image_transfer_initiate refused: {res.name}")
    for n in range((len(image) + block - 1) // block):
        res, _ = await c.action(18, obj, 2, DlmsData.structure(
            [DlmsData.double_long_unsigned(n), DlmsData.octet_string(image[n * block:(n + 1) * block])]))
        if res is not ActionResult.SUCCESS:
            raise DlmsError(f"image_block_transfer {n} refused: {res.name}")
    verify, _ = await c.action(18, obj, 3, DlmsData.integer(0))
    if verify is ActionResult.TEMPORARY_FAILURE:
        verify = await _await_image_status(c, ImageTransferStatus.VERIFY_INITIATED,
                                           ImageTransferStatus.VERIFIED, ImageTransferStatus.VERIFY_FAILED,
                                           timeout, obj)
    if not activate:
        return verify, None
    activated, _ = await c.action(18, obj, 4, DlmsData.integer(0))
    if activated is ActionResult.TEMPORARY_FAILURE:
        activated = await _await_image_status(c, ImageTransferStatus.ACTIVATION_INITIATED,
                                              ImageTransferStatus.ACTIVATED,
                                              ImageTransferStatus.ACTIVATION_FAILED, timeout, obj)
    return verify, activated


def _tampered_copies(image: bytes) -> dict[str, bytes]:
    """Copies of a genuine image that no signature over the whole image can cover:
    one byte changed in the middle, and the last bytes (where most formats keep the
    signature) cut off."""
    mid = len(image) // 2
    cut = max(1, min(256, len(image) // 4))
    return {f"vendor image with byte {mid} changed":
            image[:mid] + bytes([image[mid] ^ 0xFF]) + image[mid + 1:],
            f"vendor image without its last {cut} bytes": image[:-cut]}


@check("DLMS-FW-01", "Images with a bad or missing signature fail verification and never activate",
       severity=Severity.CRITICAL,
       requirements=["DLMS:FW-SIGNED", "EN303645:5.3-10", "IEC62443-4-2:EDR3.10", "CRA:I.2c",
                     "CRA:II.7", "EN18031-1:SUM-2"],
       tags=["firmware"], timeout=300.0, target=TargetKind.DLMS)
async def firmware_signature_enforced(target: DlmsTarget) -> CheckOutcome:
    """Bad images, each through initiate, block transfer, verify and activate; the active
    firmware identifier must not change. A positive control first: a genuine image must
    verify (it is not activated), or a refusal could be a refusal of the format rather
    than of the signature. With a vendor image (campaign ``firmware:``) the bad images
    are tampered copies of it; otherwise metercert's own envelope is signed with the key
    file's ``firmware_signing_key`` and the bad images are an unsigned one and one signed
    by an unknown key. Background verification (temporary-failure) is polled."""
    from cryptography.hazmat.primitives.asymmetric import ec

    image_obj = await _probe(target, "image_transfer", IMAGE_TRANSFER)
    if image_obj is None:
        return not_applicable("the meter lists no Image transfer object (class 18): it takes "
                              "no firmware over DLMS")
    fw_id = await _probe(target, "firmware_id", FIRMWARE_ID)
    vendor = target.read_firmware_image()
    timeout = target.firmware_verify_timeout
    if vendor is not None:
        good, good_id = vendor
        images = {label: (img, b"MCT-tampered") for label, img in _tampered_copies(good).items()}
    elif target.firmware_signing_key is not None:
        curve = ec.SECP384R1() if target.suite == 2 else ec.SECP256R1()
        payload = os.urandom(700)
        good = build_signed_image("MCT-control", payload, target.firmware_signing_key)
        good_id = b"control"
        images = {
            "unsigned": (build_signed_image("MCT-evil-unsigned", payload, None), b"unsigned"),
            "signed by an unknown key": (build_signed_image(
                "MCT-evil-foreign", payload, ec.generate_private_key(curve)), b"foreign-signed")}
    else:
        return inconclusive("no genuine image to compare with: give a vendor-signed image "
                            "(campaign 'firmware: image:') or metercert's signing key (key file "
                            "'firmware_signing_key'); a refused image cannot be told from a "
                            "refused format without one")

    async def active_id(c: DlmsClient) -> Any:
        if fw_id is None:
            return None
        return (await c.get(1, fw_id, 2)).value

    async def body(c: DlmsClient) -> CheckOutcome:
        before = await active_id(c)
        if fw_id is None:
            c.trace.note("no active firmware identifier in the object list: judged by the "
                         "verify and activate answers alone")
        control, _ = await _transfer_image(c, good, good_id, activate=False, timeout=timeout,
                                           obj=image_obj)
        if control is not ActionResult.SUCCESS:
            return inconclusive(f"even the genuine image failed verify ({control.name}): "
                                "the meter does not take this image format", _trace(c))
        problems = []
        for label, (image, ident) in images.items():
            verify, activate = await _transfer_image(c, image, ident, timeout=timeout,
                                                     obj=image_obj)
            c.trace.note(f"{label}: verify {verify.name}, activate "
                         f"{activate.name if activate else '-'}")
            if verify is ActionResult.SUCCESS:
                problems.append(f"{label}: verified")
            if activate is ActionResult.SUCCESS:
                problems.append(f"{label}: activated")
        after = await active_id(c)
        if after != before:
            problems.append(f"active firmware changed from {before!r} to {after!r}")
        ev = _trace(c)
        if problems:
            return fail("; ".join(problems), ev)
        refused = " and ".join(images)
        return passed(f"genuine image verified; {refused} refused at verify; firmware still "
                      f"{before!r}", ev)

    return await _with_management(target, body)


@check("DLMS-FW-02", "A correctly signed image verifies and activates",
       severity=Severity.MEDIUM, requirements=["DLMS:FW-SIGNED", "EN303645:5.3-10"],
       tags=["firmware"], destructive=True, timeout=180.0, target=TargetKind.DLMS)
async def firmware_signed_accepted(target: DlmsTarget) -> CheckOutcome:
    """Positive control for DLMS-FW-01 (destructive: activates new firmware)."""
    if target.firmware_signing_key is None:
        return not_applicable("no firmware signing key in the key file or campaign")
    image_obj = await _probe(target, "image_transfer", IMAGE_TRANSFER)
    if image_obj is None:
        return not_applicable("the meter lists no Image transfer object (class 18)")
    fw_id = await _probe(target, "firmware_id", FIRMWARE_ID)
    ident = f"MCT-{os.urandom(3).hex()}"
    image = build_signed_image(ident, os.urandom(900), target.firmware_signing_key)

    async def body(c: DlmsClient) -> CheckOutcome:
        verify, activate = await _transfer_image(c, image, ident.encode(),
                                                 timeout=target.firmware_verify_timeout,
                                                 obj=image_obj)
        now = (await c.get(1, fw_id, 2)).value if fw_id is not None else ident
        ev = _trace(c)
        if verify is ActionResult.SUCCESS and activate is ActionResult.SUCCESS and now == ident:
            return passed(f"signed image {ident} verified and activated", ev)
        shown = activate.name if activate else "-"
        return fail(f"signed image: verify {verify.name}, activate {shown}, active {now!r}", ev)

    return await _with_management(target, body)


