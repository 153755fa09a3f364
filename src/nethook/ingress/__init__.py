"""How events come in (a plugin family): HTTP routes, syslog, vendor payload adapters."""
