"""The networks: the MuseDance UNet with its music, beat and motion modules, the ReferenceNet attention, the mask
encoder F_m and the CLIP text encoder."""
