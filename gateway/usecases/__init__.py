"""What the product does — book, reschedule, cancel, look up — in one place every entry point calls.

REST routes, GoHighLevel workflow and marketplace routes, ClinicSync and voice routes only translate their wire format
into these commands and the result back; none of them imports another's module.
"""
