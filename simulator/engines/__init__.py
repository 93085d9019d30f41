"""Engines that run the same ServerApp and ClientApp: inline (in-process) and ray."""
