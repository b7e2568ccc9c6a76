"""The web pages: the citizens' photo upload and the reviewers' queue and dispute view.

One module per concern: `sessions` (sign-in, page sessions, CSRF), `rendering` (templates,
security headers, language), `citizen` and `reviewer` (their pages), `chart` (the dispute page's
readings timeline), `operator` (the operators' dashboard, its bar charts in `bars`) and
`static_files` (the pages' CSS and scripts). Templates are Jinja2 with autoescaping, so whatever
a user typed is escaped on every page.
"""

from __future__ import annotations

from aiohttp import web

from ingest.routes.pages.citizen import submission_page, submission_status, upload_page_get, upload_post
from ingest.routes.pages.oidc_sign_in import install_oidc
from ingest.routes.pages.operator import dashboard_page, outbox_retry, outbox_retry_all
from ingest.routes.pages.reviewer import (
    claim_next_page,
    dispute_claim,
    dispute_page_get,
    dispute_release,
    dispute_renew,
    dispute_resolve,
    queue_page,
    review_photo,
)
from ingest.routes.pages.sessions import home, page, sign_in, sign_in_page, sign_out
from ingest.routes.pages.static_files import static


def install_plain_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", page(home))
    r.add_get("/sign-in", page(sign_in_page))
    r.add_post("/sign-in", page(sign_in))
    r.add_post("/sign-out", page(sign_out))
    r.add_get("/upload", page(upload_page_get))
    r.add_post("/upload", page(upload_post))
    r.add_get("/submissions/{id}", page(submission_page))
    r.add_get("/submissions/{id}/status", page(submission_status))
    r.add_get("/review", page(queue_page))
    r.add_post("/review/claim", page(claim_next_page))
    r.add_get("/review/disputes/{id}", page(dispute_page_get))
    r.add_post("/review/disputes/{id}/claim", page(dispute_claim))
    r.add_post("/review/disputes/{id}/release", page(dispute_release))
    r.add_post("/review/disputes/{id}/renew", page(dispute_renew))
    r.add_post("/review/disputes/{id}/resolve", page(dispute_resolve))
    r.add_get("/review/photos/{sha256}", page(review_photo))
    r.add_get("/operator", page(dashboard_page))
    r.add_post("/operator/outbox/retry-dead", page(outbox_retry_all))
    r.add_post("/operator/outbox/{id}/retry", page(outbox_retry))
    r.add_get("/static/{name}", static)
    install_oidc(app)
