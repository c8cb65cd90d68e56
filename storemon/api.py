"""HTTP API: one blueprint."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import func, select

from .extensions import db
from .models import Poll, Report, Store

bp = Blueprint("api", __name__)


@bp.get("/health")
def health():
    stores = db.session.execute(select(func.count()).select_from(Store)).scalar_one()
    polls = db.session.execute(select(func.count()).select_from(Poll)).scalar_one()
    reports = db.session.execute(select(func.count()).select_from(Report)).scalar_one()
    return jsonify(status="ok", database="reachable", stores=stores, polls=polls, reports=reports)
