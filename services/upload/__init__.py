"""The upload coordinator: owns files, their parts and upload sessions; hands out presigned
URLs so bytes go straight from clients to storage, never through Dropfile's processes."""
