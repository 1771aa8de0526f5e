"""The alliance admin web console (``/console``): server-rendered pages for operators (``admin``) and
auditors (read-only), in English and Simplified Chinese. See ``README.md`` here for how to add pages."""
