"""teams-connect core: the shared layer every function imports."""
