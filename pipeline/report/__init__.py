"""The HTML label report: the page put together (build: build_report), its HTML pieces (page),
pictures (images: the palette, overlays, inline JPEGs) and the source images and frames it shows
(sources).
"""
