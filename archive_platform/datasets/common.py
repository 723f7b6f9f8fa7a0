"""Data-dictionary entries shared by several datasets."""

TIMESTAMP = "UTC instant of the event"
SNAPSHOT_TIME = "UTC instant of the scheduled snapshot the row belongs to (dedup key part)"
ET_OFFSET = "minutes; US/Eastern UTC offset at `timestamp` (-300 winter, -240 summer)"
SOURCE = "where the row came from: sim, or the vendor's name"
SYMBOL = "underlying ticker (upper case)"
