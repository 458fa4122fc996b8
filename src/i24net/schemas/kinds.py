"""Message kinds and the payload schema each one carries.

The symbols are those of the ``net.i24.MessageKind`` enum (``schemas/``);
a unit test keeps this mapping and the enum in step.
"""

from __future__ import annotations

KIND_SCHEMAS: dict[str, str] = {
    "RED_NOTICE_REQUEST": "net.i24.RedNoticeRequest",
    "YELLOW_NOTICE_REQUEST": "net.i24.YellowNoticeRequest",
    "BLUE_NOTICE_REQUEST": "net.i24.BlueNoticeRequest",
    "BLACK_NOTICE_REQUEST": "net.i24.BlackNoticeRequest",
    "GREEN_NOTICE_REQUEST": "net.i24.GreenNoticeRequest",
    "ORANGE_NOTICE_REQUEST": "net.i24.OrangeNoticeRequest",
    "PURPLE_NOTICE_REQUEST": "net.i24.PurpleNoticeRequest",
    "SILVER_NOTICE_REQUEST": "net.i24.SilverNoticeRequest",
    "UNSC_SPECIAL_NOTICE_REQUEST": "net.i24.UnscSpecialNoticeRequest",
    "WANTED_PERSON_DIFFUSION": "net.i24.WantedPersonDiffusion",
    "DIFFUSION": "net.i24.Diffusion",
    "POLICE_MESSAGE": "net.i24.PoliceMessage",
    "DB_QUERY": "net.i24.DbQuery",
    "DB_RESPONSE": "net.i24.DbResponse",
    "DELIVERY_RECEIPT": "net.i24.DeliveryReceipt",
    "REVIEW_DECISION": "net.i24.ReviewDecision",
    "STATUS_NOTICE": "net.i24.StatusNotice",
    "AUDIT_RECORD": "net.i24.AuditRecord",
}
"""Kind symbol -> full name of the payload (body) schema it carries."""
