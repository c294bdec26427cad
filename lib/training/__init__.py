"""The training stack (requirements.txt): data, augmentation, model, losses, the loop, run folders, export.

Built on lib.live (preprocessing, model descriptions, writes, the segmenter it fills with torch loaders).
"""
