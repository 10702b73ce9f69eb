"""Masking sensitive fields in consumed records, per the masking rules of a grant.

Sans-I/O: the tunnel hands a partition's record bytes to `GrantMasker.mask` and forwards
what comes back (or, on MaskingError, an error for that partition and no records).
"""

from streamctl.masking.errors import MaskingError
from streamctl.masking.masker import RECORDS_SEEN, GrantMasker, mask_record

__all__ = ["RECORDS_SEEN", "GrantMasker", "MaskingError", "mask_record"]
