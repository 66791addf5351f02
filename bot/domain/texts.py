"""Every user-facing text, in one catalogue per language.

Handlers call `t(key, **params)`; they never hold a text. Parameters are HTML-escaped here,
in one place, so a value a person typed ("<b>Иван</b> & Co") is always shown as typed. A
fragment that is already HTML (built from escaped parts) is passed wrapped in `Html`.
A second language is a second catalogue with the same keys plus a choice of `LOCALE`
(for example from `from_user.language_code` in a middleware); handlers do not change.
"""

from __future__ import annotations

from contextvars import ContextVar
from html import escape
from typing import Any


class Html(str):
    """A fragment that is already safe HTML."""

    __slots__ = ()


RU: dict[str, str] = {
    # The command menu (descriptions: at most 256 characters)
    "command_start": "Зарегистрироваться",
    "command_me": "Мои регистрации",
    "command_cancel": "Прервать анкету",
    "command_help": "Справка",
    "command_forget": "Удалить все мои данные",
    "command_export": "Выгрузка CSV и Excel",
    "command_stats": "Цифры по сессиям",
    "command_find": "Поиск регистрации",
    "command_broadcast": "Рассылка участникам",
    "command_digest": "Сводка сейчас",
    "command_erase": "Удалить данные участника по запросу",
    "command_audit": "Журнал удалений и выгрузок",
    # Events
    "event_card": "<b>{title}</b>\n📅 {when}\n📍 {location}",
    "event_card_unknown": "<b>Мероприятие удалено из расписания</b>",
    "event_deadline": "⏳ Регистрация открыта до {deadline}",
    "event_join_url": "🔗 Ссылка для подключения: {url}",
    "greeting": "Здравствуйте! Здесь можно зарегистрироваться на мероприятие.\n\n{card}",
    "event_description": "{description}",
    "choose_event": "Здравствуйте! Открыта регистрация на несколько мероприятий. Выберите, "
    "на какое вы хотите зарегистрироваться:",
    "no_open_events": "Сейчас регистрация ни на одно мероприятие не открыта. Спасибо за интерес!",
    "contact_line": "Связаться с организаторами: {contact}",
    "event_not_found": "Не нашёл мероприятие по этой ссылке. Возможно, ссылка устарела.",
    "event_closed": "Регистрация на «{title}» закрыта: срок истёк {deadline}.",
    "already_registered": "Вы уже зарегистрированы на это мероприятие. Вот ваши данные:",
    # Consent (152-FZ: explicit, separate, nothing pre-selected)
    "consent_request": "Для регистрации нужны ваши ФИО, должность, место работы, телефон и "
    "e-mail. Пожалуйста, подтвердите согласие на обработку персональных данных.\n\n"
    "<b>Условия обработки:</b>\n{policy}",
    "consent_default_policy": "Данные используются только для регистрации на это мероприятие и "
    "связи с вами по нему; их получают только организаторы мероприятия и администраторы бота "
    "(Федеральный закон № 152-ФЗ «О персональных данных»). Данные регистрации удаляются "
    "автоматически {retention}. Согласие можно отозвать в любой момент: отмена регистрации в /me "
    "сразу удаляет её данные, а команда /forget — все ваши данные в боте.",
    "retention_after_days": "через {days} после окончания мероприятия",
    "retention_next_day": "на следующий день после окончания мероприятия",
    "unit_days": "день|дня|дней",
    "button_consent_agree": "✅ Даю согласие",
    "button_consent_decline": "Не согласен(на)",
    "consent_given": "✅ Согласие на обработку персональных данных получено.",
    "consent_declined": "Хорошо, без согласия регистрация невозможна, и мы ничего не сохранили. "
    "Если передумаете, отправьте /start.",
    "consent_press_button": "Пожалуйста, нажмите одну из кнопок под сообщением: согласие "
    "нужно до того, как вы укажете свои данные. Выйти — /cancel.",
    # Questions
    "ask_step": "Шаг {number} из {total}. {question}",
    "ask_full_name": "Введите ваши <b>фамилию, имя и отчество</b> полностью, например: "
    "Иванова Мария Петровна.",
    "ask_position": "Ваша <b>должность</b>?",
    "ask_organization": "<b>Место работы</b>: полное название организации.",
    "ask_phone": "Ваш <b>номер телефона</b>: нажмите кнопку «Отправить мой номер» внизу или "
    "введите номер, например +7 912 345-67-89.",
    "ask_email": "Ваш <b>адрес электронной почты</b>, например name@example.ru.",
    "ask_edit": "Сейчас указано: {current}\n\n{question}",
    "button_share_phone": "📱 Отправить мой номер",
    "phone_saved": "Телефон {phone} записан.",
    # Field names (in summaries and edit buttons)
    "field_full_name": "ФИО",
    "field_position": "Должность",
    "field_organization": "Место работы",
    "field_phone": "Телефон",
    "field_email": "E-mail",
    # Rejections: "{reason}" then the question again
    "rejected": "⚠️ {reason}",
    "reason_too_long": "Слишком длинный ответ: {length} символов, а можно не больше {limit}.",
    "reason_empty": "Ответ пустой.",
    "reason_too_short": "Слишком коротко: нужно хотя бы {minimum} символа.",
    "reason_no_letters": "В ответе должны быть буквы.",
    "reason_name_digits": "В ФИО не должно быть цифр.",
    "reason_name_symbols": "В ФИО допустимы только буквы, пробелы, дефис, точка и апостроф.",
    "reason_phone_symbols": "В номере телефона допустимы только цифры, пробелы, скобки, "
    "дефисы и «+».",
    "reason_phone_unparsable": "Не похоже на номер телефона.",
    "reason_phone_invalid": "Такого номера не существует: проверьте количество цифр и код. "
    "Номер другой страны вводите с кодом страны, например +375 29 123-45-67.",
    "reason_contact_not_own": "Это чужой контакт. Отправьте свой номер кнопкой внизу или "
    "введите его вручную.",
    "reason_email_spaces": "В адресе электронной почты не должно быть пробелов.",
    "reason_email_no_at": "В адресе нет знака «@».",
    "reason_email_many_at": "В адресе должен быть ровно один знак «@».",
    "reason_email_no_local": "Перед «@» должно быть имя ящика.",
    "reason_email_domain": "После «@» должен быть домен с точкой, например mail.ru.",
    "reason_email_invalid": "Адрес записан с ошибкой.",
    "reason_not_text": "Я жду ответ текстом, а пришло {kind}.",
    "reason_unknown_command": "Команда {command} здесь не работает. Чтобы выйти из анкеты, "
    "отправьте /cancel.",
    "kind_sticker": "стикер",
    "kind_photo": "фото",
    "kind_voice": "голосовое сообщение",
    "kind_video": "видео",
    "kind_document": "файл",
    "kind_location": "геопозиция",
    "kind_contact": "контакт",
    "kind_other": "сообщение другого типа",
    # Summary and confirmation
    "summary": "Проверьте, пожалуйста, данные:\n\n{card}\n\n{answers}\n\nВсё верно?",
    "button_confirm": "✅ Подтвердить",
    "button_edit_field": "✏️ {field}",
    "button_cancel_form": "Отменить",
    "summary_press_button": "Нажмите «Подтвердить», если всё верно, или кнопку поля, которое "
    "нужно изменить.",
    "confirmed": "🎉 Вы зарегистрированы!\n\n{card}\n\nЖдём вас. Посмотреть или изменить данные — "
    "/me.",
    "confirm_failed_closed": "К сожалению, регистрация уже закрыта, и анкета не отправлена.",
    # /me
    "my_none": "Мы не храним ни одной вашей регистрации. Зарегистрироваться — /start.",
    "my_registration": "{card}\n\n{answers}\n\nЗарегистрированы {registered_at}.\n{stored}",
    "my_stored": "<b>Telegram:</b> id {user_id}, имя пользователя {username}, имя {name}\n"
    "<b>Согласие на обработку данных:</b> {consent_at}, редакция условий «{version}»",
    "my_source": "<b>Источник ссылки, по которой вы пришли:</b> {source}",
    "my_kept_until": "🗑 Данные этой регистрации хранятся до {date} включительно ({zone}), "
    "затем удаляются.",
    "my_no_username": "не указано",
    "my_form_kept": "✍️ Хранится ваша незаконченная анкета: ответы, которые вы уже дали. Она "
    "удаляется, если её не трогать {days}, или когда закрывается регистрация на мероприятие; "
    "удалить её сейчас — /cancel.",
    # /me: what is done with the data (Federal Law 152-FZ, art. 14), once per reply
    "privacy_header": "ℹ️ <b>Ваши персональные данные</b> (ст. 14 Федерального закона № 152-ФЗ)"
    "\nВыше — данные, которые бот хранит о вас в каждой регистрации.",
    "privacy_operator": "<b>Оператор:</b> {operator}",
    "privacy_operator_for": "<b>Оператор</b> для {titles}: {operator}",
    "privacy_operator_name": "{operator}",
    "privacy_operator_unknown": "организаторы мероприятия",
    "privacy_operator_unknown_contacts": "организаторы мероприятия (связаться: {contacts})",
    "privacy_title": "«{title}»",
    "privacy_purpose": "<b>Цель:</b> регистрация на мероприятие и связь с вами по нему.",
    "privacy_recipients": "<b>Кто получает данные:</b> организаторы мероприятия (карточка "
    "каждой регистрации приходит в их чаты в Telegram) и администраторы бота (выгрузки и поиск).",
    "privacy_retention": "<b>Срок хранения:</b> данные регистрации удаляются автоматически "
    "{retention}; дата указана в каждой регистрации.",
    "privacy_erase": "<b>Как удалить:</b> кнопка «Отменить регистрацию» под регистрацией сразу "
    "удаляет её данные; команда /forget удаляет все ваши данные: все регистрации, незаконченную "
    "анкету и сообщения, ожидающие отправки вам.",
    "my_registration_closed": "Срок изменения данных истёк; если что-то поменялось, напишите "
    "организаторам.",
    "button_change": "✏️ Изменить данные",
    "button_withdraw": "Отменить регистрацию",
    "choose_field": "Что изменить?",
    "button_back": "← Назад",
    "withdraw_confirm": "Отменить регистрацию на «{title}»? Ваши данные в ней (ФИО, должность, "
    "место работы, телефон, e-mail и данные Telegram) будут сразу удалены; организаторы получат "
    "только уведомление об отмене с номером регистрации.",
    "button_withdraw_yes": "Да, отменить",
    "button_withdraw_no": "Нет, оставить",
    "withdrawn": "Регистрация на «{title}» отменена, ваши персональные данные в ней удалены. "
    "Осталась только запись без них: мероприятие, время регистрации и отмены, время и редакция "
    "согласия. Если передумаете, отправьте /start.",
    "withdraw_kept": "Хорошо, регистрация сохранена.",
    "field_updated": "✅ Изменения сохранены.",
    "change_closed": "Изменить данные уже нельзя: регистрация закрыта.",
    # /forget (152-FZ art. 21 §5: consent withdrawn, data destroyed)
    "forget_confirm": "Удалить все ваши данные? Будут удалены ФИО, должность, место работы, "
    "телефон, e-mail и данные Telegram во всех ваших регистрациях (регистраций: "
    "{registrations}), незаконченная анкета и сообщения, которые ждут отправки вам. Регистрации "
    "будут отменены, организаторы получат уведомление только с номером регистрации. Отменить "
    "удаление будет нельзя.",
    "forget_confirm_draft": "Удалить ваши данные? Будут удалены незаконченная анкета со всеми "
    "ответами и сообщения, которые ждут отправки вам. Отменить удаление будет нельзя.",
    "forget_nothing": "У нас нет ваших персональных данных: ни регистраций, ни незаконченной "
    "анкеты.",
    "button_forget_yes": "Да, удалить всё",
    "button_forget_no": "Нет, оставить",
    "forget_done": "Готово: ваши данные удалены (регистраций: {registrations}). Если захотите "
    "зарегистрироваться снова — /start.",
    "forget_done_nothing": "Ваших данных у нас уже нет.",
    "forget_kept": "Хорошо, ничего не удалено.",
    # Commands and fallbacks
    "help": "Я регистрирую участников мероприятий.\n\n"
    "/start — зарегистрироваться\n/me — мои регистрации: посмотреть, изменить, отменить\n"
    "/cancel — прервать заполнение анкеты\n/forget — удалить все мои данные\n"
    "/help — эта справка",
    "cancelled": "Анкета удалена, данные не сохранены. Начать заново — /start.",
    "nothing_to_cancel": "Сейчас нечего отменять. Зарегистрироваться — /start, мои регистрации "
    "— /me.",
    "form_in_progress": "Вы уже заполняете анкету, продолжим. Начать заново — /cancel, затем "
    "/start.",
    "not_understood": "Не понял сообщение. Зарегистрироваться — /start, мои регистрации — /me, "
    "справка — /help.",
    "button_expired": "Эта кнопка больше не действует.",
    "already_confirmed": "Регистрация уже подтверждена.",
    "answer_current_question": "Сначала ответьте на текущий вопрос анкеты.",
    "finish_form_first": "Сначала закончите анкету или отмените её командой /cancel.",
    "group_pointer": "Регистрация проходит в личном чате с ботом: {link}",
    "error_try_again": "Не получилось сохранить: что-то пошло не так на нашей стороне. Ваши "
    "ответы не потеряны, попробуйте ещё раз через минуту.",
    "slow_down": "Слишком много сообщений подряд: пока я пропускаю новые. Подождите несколько "
    "секунд и отправьте ответ ещё раз.",
    "slow_down_button": "Слишком много нажатий подряд. Подождите несколько секунд.",
    "update_set_aside": "Извините, ваше сообщение не удалось обработать. Отправьте его ещё раз "
    "или начните заново — /start.",
    # Organisers' daily digest
    "digest_header": "📊 <b>Сводка за {date}</b>",
    "digest_nothing_new": "📊 Сводка за {date}: новых регистраций нет. Всего зарегистрированы: "
    "{totals}.",
    "digest_total_item": "«{title}» — {confirmed}",
    "digest_total_item_final": "«{title}» — {confirmed} (сессия началась, сводка последняя)",
    "digest_event_title": "<b>{title}</b>",
    "digest_event_continued": "<b>{title}</b> (продолжение)",
    "digest_event_when": "📅 {when}",
    "digest_final": "🏁 Сессия началась: это последняя сводка по ней.",
    "digest_new_count": "🆕 Новых регистраций: {count}",
    "digest_new_none": "🆕 Новых регистраций нет.",
    "digest_new_line": "{number}. {full_name} — {organization}",
    "digest_new_more": "…и ещё {count}",
    "digest_totals": "👥 Всего зарегистрированы: {confirmed}, отменили регистрацию: {withdrawn}",
    "digest_seats_left": "💺 Свободных мест: {left} из {capacity}",
    "digest_seats_none": "💺 Свободных мест нет (всего {capacity})",
    "digest_waiting": "📋 В листе ожидания: {count}",
    "digest_total_seats": " ({seats})",
    "digest_per_day": "📈 По дням: {days}",
    "digest_per_day_item": "{date} — {count}",
    "digest_deadline_days": "⏳ До конца регистрации: {days} дн. (до {deadline})",
    "digest_deadline_today": "⏳ Регистрация закрывается сегодня, {deadline}",
    "digest_closed": "⏳ Регистрация закрыта.",
    "digest_start_days": "🗓 До начала: {days} дн.",
    "digest_start_today": "🗓 Начало сегодня.",
    # Organiser cards (one per registration change; "№" names the registration)
    "card_created": "🆕 <b>Новая регистрация №{id}</b>\n{event}\n\n{answers}\n{telegram}\n🕒 {at}",
    "card_changed": "✏️ <b>Изменение регистрации №{id}</b>\n{event}\n{full_name}\n"
    "<b>{field}:</b> {old} → {new}\n🕒 {at}",
    "card_withdrawn": "❌ <b>Отмена регистрации №{id}</b>\n{event}\nДанные участника удалены."
    "\n🕒 {at}",
    "card_erased": "🗑 <b>Участник удалил свои данные: регистрация №{id}</b>\n{event}\n🕒 {at}",
    "card_erased_on_request": "🗑 <b>Данные участника удалены по его запросу: регистрация №{id}"
    "</b>\n{event}\n🕒 {at}",
    "card_event": "{title} · {when}",
    "card_telegram": '<b>Telegram:</b> <a href="tg://user?id={user_id}">{name}</a>{username}',
    "card_separator": "\n\n",
    # Admin commands
    "admin_only": "Эта команда доступна только администраторам бота.",
    "digest_no_sessions": "Сводки нет: ни одна сессия не идёт и не предстоит.",
    "admin_help": "Команды администратора:\n/export — выгрузка регистраций (CSV и Excel)\n"
    "/stats — цифры по сессиям\n/find <i>текст</i> — поиск по ФИО, организации, телефону, e-mail\n"
    "/broadcast — сообщение всем зарегистрированным\n/digest — сводка для организаторов сейчас\n"
    "/erase <i>телефон, e-mail или номер регистрации</i> — удалить персональные данные участника "
    "по его запросу\n/audit — журнал: удаления данных, выгрузки, поиск, рассылки",
    "choose_event_admin": "Выберите сессию:",
    "export_preparing": "⏳ Готовлю выгрузку…",
    "export_done": "✅ Выгрузка готова: {rows} строк, файлы CSV и Excel ниже.",
    "export_failed": "Не получилось подготовить выгрузку. Попробуйте ещё раз; если не выйдет — "
    "выгрузите на сервере: python -m bot export.",
    "export_already_running": "⏳ Выгрузка уже готовится: файлы придут сюда, как только будут "
    "готовы.",
    "export_interrupted": "Выгрузка прервана: бот перезапускается. Через минуту отправьте "
    "/export ещё раз.",
    "button_all_events": "Все сессии",
    "no_events": "В файле мероприятий нет ни одной сессии.",
    # /stats
    "stats_event": "<b>{title}</b>\n📅 {when}\n✅ Зарегистрированы: {confirmed}\n"
    "❌ Отменили: {withdrawn}\n✍️ Заполняют анкету: {in_progress}\n"
    "🆕 Сегодня: {today}, за 7 дней: {last_7_days}\n🚫 Заблокировали бота: {unreachable}\n"
    "⏳ {deadline}",
    "stats_deadline_days": "До конца регистрации: {days} дн.",
    "stats_deadline_today": "Регистрация закрывается сегодня",
    "stats_closed": "Регистрация закрыта",
    "stats_parked_header": "<b>⚠️ Чаты, куда бот не может писать: {count}</b>\n"
    "Бот пробует снова раз в час; сообщения ждут.",
    "stats_parked_item": "• {chat_id} — с {since}, ждут сообщений: {waiting}\n  {reason}",
    "stats_since_unknown": "неизвестно когда",
    "stats_failed_header": "<b>❗ Не доставлены (Telegram отклонил сообщение): {count}</b>",
    "stats_failed_item": "• {count} — {reason} (последнее {last})",
    "stats_more": "…и ещё {count}",
    # Where people came from (the source in a session's link: bot/domain/sources.py)
    "sources_line": "🔗 Откуда пришли: {items}",
    "sources_item": "{source} — {count}",
    "sources_item_new": "{source} — {count} (+{new})",
    "sources_none": "без метки",
    "sources_more": "ещё источников: {sources}, в них {count}",
    # /find
    "find_usage": "Напишите, что искать: /find Иванова, /find 912345, /find @mail.ru",
    "find_none": "Ничего не нашлось по запросу «{query}».",
    "find_header": "Найдено: {count}",
    "find_more": "…и ещё {count}. Уточните запрос.",
    "find_item": "{number}. <b>{full_name}</b> — {organization}\n   {phone}, {email}\n"
    "   {title} · {status}",
    "status_confirmed": "зарегистрирован(а)",
    "status_withdrawn": "отменил(а) регистрацию",
    # /erase: a participant's request by other channels (152-FZ art. 21 §5)
    "erase_usage": "Напишите, чьи данные удалить: /erase +7 912 345-67-89, /erase "
    "ivanova@example.ru или /erase 123 (номер регистрации).",
    "reason_person_key_unclear": "Это не телефон, не e-mail и не номер регистрации.",
    "erase_none": "Регистраций с персональными данными по запросу «{query}» нет: ничего не "
    "удалено. Если данные уже удаляли, журнал — /audit.",
    "erase_header": "Регистрации с персональными данными: {count}",
    "erase_item": "№{id} · {title} · <b>{full_name}</b> · {status}",
    "erase_more": "…и ещё {count}",
    "erase_confirm": "Удалить персональные данные этих регистраций ({count})? ФИО, должность, "
    "место работы, телефон, e-mail и данные Telegram будут удалены безвозвратно; регистрации "
    "останутся в счёте без данных, организаторы получат уведомление только с номером.",
    "erase_too_many": "Совпадений больше, чем можно удалить одной кнопкой ({count}). Удаляйте "
    "по номеру регистрации: /erase {example}.",
    "button_erase_yes": "Да, удалить",
    "button_erase_no": "Нет, оставить",
    "erase_done": "Готово: персональные данные удалены, регистраций: {count} ({numbers}).",
    "erase_done_nothing": "Данные этих регистраций уже удалены: ничего не изменилось.",
    "erase_kept": "Хорошо, ничего не удалено.",
    # /audit: the record of erasures and of reads of personal data
    "audit_empty": "Журнал пуст: данных не удаляли, выгрузок, поиска и рассылок не было.",
    "audit_header": "<b>Журнал, последние записи ({count}), новые сверху</b>",
    "audit_more": "…и ещё {count}. Весь журнал — на сервере: python -m bot audit --since "
    "ГГГГ-ММ-ДД",
    "audit_separator": " · ",
    "audit_value": "{value}",
    "audit_action_erase": "удаление",
    "audit_action_export": "выгрузка",
    "audit_action_find": "поиск",
    "audit_action_broadcast": "рассылка",
    "audit_reason_withdrawal": "отмена регистрации",
    "audit_reason_forget": "/forget",
    "audit_reason_admin": "по запросу",
    "audit_reason_retention": "срок хранения истёк",
    "audit_reason_draft_expiry": "анкета заброшена",
    "audit_actor_participant": "участник",
    "audit_actor_operator": "оператор (сервер)",
    "audit_actor_retention": "бот",
    "audit_actor_upgrade": "обновление бота",
    "audit_actor_admin": "админ {id}",
    "audit_registration": "№{id}",
    "audit_all_events": "все сессии",
    "audit_fields": "удалено: {fields}",
    "audit_rows": "строк: {count}",
    "audit_field_full_name": "ФИО",
    "audit_field_position": "должность",
    "audit_field_organization": "место работы",
    "audit_field_phone": "телефон",
    "audit_field_email": "e-mail",
    "audit_field_user_id": "Telegram ID",
    "audit_field_username": "имя пользователя",
    "audit_field_telegram_name": "имя в Telegram",
    "audit_field_draft": "анкета",
    # /broadcast
    "broadcast_write": "Сессия «{title}», получателей: {count}.\nНапишите сообщение для рассылки "
    "(текст до 4096 символов) или пришлите фото или документ с подписью (до 1024 символов). "
    "Отменить — /cancel.",
    "broadcast_nobody": "На сессию «{title}» пока никто не зарегистрирован: рассылать некому.",
    "broadcast_text_only": "Для рассылки пришлите текст, фото или документ (подпись — по "
    "желанию). Отменить — /cancel.",
    "broadcast_caption_too_long": "Подпись длиннее 1024 символов: Telegram не отправит её под "
    "фото или документом. Сократите подпись или пришлите текст отдельным сообщением.",
    "broadcast_too_long": "Сообщение длиннее 4096 символов: сократите его, пожалуйста.",
    "broadcast_preview": "Так увидят сообщение {count} получателей (сессия «{title}»):",
    "button_broadcast_send": "📨 Отправить ({count})",
    "button_broadcast_cancel": "Отменить",
    "broadcast_press_button": "Нажмите «Отправить» под предпросмотром или /cancel.",
    "broadcast_not_a_command": "Сейчас я жду текст рассылки, а это команда. Напишите сообщение "
    "для участников или отмените рассылку — /cancel.",
    "broadcast_cancelled": "Рассылка отменена, ничего не отправлено.",
    "broadcast_progress": "📨 Рассылка по «{title}»: отправлено {done} из {total}…",
    "broadcast_report": "✅ Рассылка по «{title}» завершена.\nДоставлено: {delivered}\n"
    "Заблокировали бота: {blocked}\nНе удалось отправить: {failed}",
    # Exports (CSV and XLSX): the header row, statuses, the sheet's name (31 characters max)
    "export_column_session": "Сессия",
    "export_column_status": "Статус",
    "export_column_registered_at": "Дата регистрации",
    "export_column_full_name": "ФИО",
    "export_column_position": "Должность",
    "export_column_organization": "Организация",
    "export_column_phone": "Телефон",
    "export_column_email": "E-mail",
    "export_column_user_id": "Telegram ID",
    "export_column_username": "Имя пользователя Telegram",
    "export_column_consent_at": "Дата согласия на обработку ПДн",
    "export_column_unreachable": "Заблокировал(а) бота",
    "export_column_source": "Источник",
    "export_unreachable_yes": "да",
    "export_status_confirmed": "подтверждена",
    "export_status_withdrawn": "отменена",
    "export_sheet_name": "Регистрации",
    # Seats and the waiting list (issue 13)
    "seats_left": "🪑 Осталось мест: {left} из {capacity}.",
    "seats_none": "🪑 Свободных мест нет: можно встать в лист ожидания. Когда место "
    "освободится, бот предложит его первому в очереди.",
    "summary_waitlist": "🪑 Свободных мест нет. Нажав «Встать в лист ожидания», вы займёте "
    "место в очереди с этими ответами; когда место освободится, бот предложит его по очереди.",
    "button_join_waitlist": "🕒 Встать в лист ожидания",
    "waitlisted": "🕒 Свободных мест нет, и вы в листе ожидания: место в очереди — {place}.\n\n"
    "{card}\n\nКогда место освободится, бот пришлёт предложение с кнопкой. Покинуть лист "
    "ожидания — /me.",
    "already_in_line": "Вы уже в листе ожидания.",
    "already_waiting": "Вы уже в листе ожидания на это мероприятие. Вот ваши данные:",
    "waiting_place": "🕒 <b>Лист ожидания:</b> место в очереди — {place}.",
    "waiting_offer_open": "🎟 <b>Для вас освободилось место:</b> подтвердите его до {until}.",
    "offer_message": "🎟 Освободилось место на «{title}»! Оно закреплено за вами до {until}. "
    "Нажмите «Занять место», чтобы зарегистрироваться; если не успеете, место перейдёт "
    "следующему в очереди.",
    "button_take_seat": "✅ Занять место",
    "offer_taken": "🎉 Место ваше, вы зарегистрированы!\n\n{card}\n\nЖдём вас. Посмотреть или "
    "изменить данные — /me.",
    "offer_expired": "Срок предложения истёк, и место перешло следующему в очереди. Вы "
    "по-прежнему в листе ожидания: место в очереди — {place}.",
    "offer_ran_out": "Время на подтверждение места на «{title}» истекло, и место перешло "
    "следующему в очереди. Вы остаётесь в листе ожидания, в конце очереди; место в очереди — "
    "в /me.",
    "offer_already": "Место уже ваше: вы зарегистрированы.",
    "offer_gone": "Этого места в листе ожидания больше нет. Зарегистрироваться — /start.",
    "waitlist_closed": "Регистрация на «{title}» закрыта, и место, к сожалению, так и не "
    "освободилось. Спасибо, что ждали!",
    "button_leave_waitlist": "Покинуть лист ожидания",
    "leave_confirm": "Покинуть лист ожидания на «{title}»? Ваши данные в этой записи (ФИО, "
    "должность, место работы, телефон, e-mail и данные Telegram) будут сразу удалены, а место в "
    "очереди потеряно.",
    "button_leave_yes": "Да, покинуть",
    "left_waitlist": "Вы покинули лист ожидания на «{title}», ваши данные в этой записи удалены. "
    "Если передумаете, отправьте /start.",
    "card_waiting": "🕒 <b>Лист ожидания: регистрация №{id}, место в очереди — {place}</b>\n"
    "{event}\n\n{answers}\n{telegram}\n🕒 {at}",
    "card_offered": "🎟 <b>Место предложено: регистрация №{id}</b> (из листа ожидания, до "
    "{until})\n{event}\n{full_name}\n🕒 {at}",
    "card_promoted": "✅ <b>Место занято из листа ожидания: регистрация №{id}</b>\n{event}\n"
    "{full_name}\n🕒 {at}",
    "card_left_waitlist": "❌ <b>Выход из листа ожидания: регистрация №{id}</b>\n{event}\n"
    "Данные участника удалены.\n🕒 {at}",
    "stats_seats": "🪑 Мест: {capacity}, занято: {confirmed}, свободно: {left}",
    "stats_waitlist": "🕒 Лист ожидания: {waiting}, из них с предложением места: {offered}",
    "status_waiting": "в листе ожидания",
    "export_status_waiting": "лист ожидания",
    # Reminders, a changed session, the calendar file (issue 13)
    "reminder": "⏰ Напоминаем: через {left} начнётся мероприятие, на которое вы "
    "зарегистрированы.\n\n{card}",
    "unit_hours": "час|часа|часов",
    "unit_minutes": "минуту|минуты|минут",
    "session_changed": "📣 <b>Изменения в мероприятии «{title}»</b>\n{changes}\n\nТеперь так:"
    "\n{card}\n\nНапоминания придут по новому времени. Обновлённый файл для календаря — "
    "следующим сообщением.",
    "change_starts_at": "📅 Начало: было {old}, стало {new}",
    "change_ends_at": "🏁 Окончание: было {old}, стало {new}",
    "change_location": "📍 Место: было «{old}», стало «{new}»",
    "change_join_url": "🔗 Ссылка для подключения: было {old}, стало {new}",
    "change_none": "не указано",
    "calendar_caption": "📅 Файл для календаря: откройте его, чтобы добавить «{title}» в свой "
    "календарь (или обновить уже добавленное).",
    "calendar_join_url": "Ссылка для подключения: {url}",
    "calendar_contact": "Связаться с организаторами: {contact}",
    "button_calendar": "📅 Файл для календаря",
    # The sandbox (`make try`): lines printed in the terminal, never sent to Telegram
    "sandbox_starting": "Песочница: запускаю бота — без токена и без сети…",
    "sandbox_folder": "Временная папка: {folder} (удаляется при выходе)",
    "sandbox_demo_added": "В {file} нет открытой сессии: добавлена демо-сессия на {date}.",
    "sandbox_help": (
        "Вы — участник. Пишите ответы, кнопки нажимайте их номером, /команды — как в Telegram. "
        ":admin — чат администратора (это тоже вы: /export, /stats, /broadcast), "
        ":org — чат организаторов (карточки и сводка, /digest), :me — обратно, :quit — выход."
    ),
    "sandbox_seat_me": "── ваш чат с ботом ──",
    "sandbox_seat_admin": "── чат администратора ──",
    "sandbox_seat_org": "── чат организаторов (группа) ──",
    "sandbox_prompt_me": "вы › ",
    "sandbox_prompt_admin": "админ › ",
    "sandbox_prompt_org": "организаторы › ",
    "sandbox_bot": "── бот ──",
    "sandbox_bot_edited": "── бот (изменено) ──",
    "sandbox_url_button": "  ↗ {text}: {url}",
    "sandbox_pressed": "→ {text}",
    "sandbox_shared": "→ вы поделились номером {phone}",
    "sandbox_file_saved": "📎 {name} сохранён: {path}",
    "sandbox_news": "· новое сообщение в {seat}",
    "sandbox_digest_via_admin": "/digest спрашивают в личном чате с ботом (так в Telegram): "
    "отправлено из :admin, ответ — здесь.",
    "sandbox_unknown_command": "Нет команды {command}. Есть :me, :admin, :org, :quit.",
    "sandbox_no_button": (
        "Нет кнопки [{number}]: нажать можно кнопку, показанную после вашего последнего действия."
    ),
    "sandbox_interrupted": "Ctrl-C: останавливаю песочницу.",
    "sandbox_end_of_input": "Ввод закончен (Ctrl-D): останавливаю песочницу.",
    "sandbox_stopped": "Песочница остановлена, временная папка удалена.",
    "sandbox_bot_stopped": "Бот остановился сам (код {code}): {line}",
    "sandbox_bot_not_started": "Бот не начал работу за {seconds} с: {line}",
    "sandbox_refused": (
        "Песочница не запускается: бот был бы направлен на {url}, а она работает только "
        "с поддельным Bot API на 127.0.0.1."
    ),
    "sandbox_failed": "Песочница остановлена из-за ошибки: {error}",
    "sandbox_demo_title": "Демо-сессия песочницы",
    "sandbox_demo_location": "Онлайн",
    "sandbox_demo_description": (
        "Эту сессию добавила песочница (make try): в файле сессий нет открытой регистрации."
    ),
    "sandbox_demo_policy": (
        "Песочница: данные хранятся во временной папке и удаляются при выходе."
    ),
    # The event's own questions (`[[events.questions]]`, issue 14). A question's own text
    # comes from the events file (bot/domain/form.py: question_text); these frame it.
    "question_ask": "{question}",
    "question_hint_choice": "Выберите вариант кнопкой или напишите его.",
    "question_hint_yes_no": "Нажмите «Да» или «Нет» (или напишите).",
    "question_hint_optional": "Необязательный вопрос: можно нажать «Пропустить».",
    "button_skip": "Пропустить",
    "button_yes": "Да",
    "button_no": "Нет",
    "answer_line": "<b>{question}:</b> {answer}",
    "answer_skipped": "—",
    "reason_not_an_option": "Такого варианта нет: выберите один из вариантов кнопкой.",
    "reason_required": "Этот вопрос обязательный: пропустить его нельзя.",
    "question_button_stale": "Эта кнопка уже не действует.",
    "export_answers": "Ответы",
    "export_answer_pair": "{question}: {answer}",
}

CATALOGUES: dict[str, dict[str, str]] = {"ru": RU}
LOCALE: ContextVar[str] = ContextVar("LOCALE", default="ru")


def t(key: str, /, **params: Any) -> str:
    """The text for `key` in the current locale, with parameters escaped."""
    template = CATALOGUES[LOCALE.get()][key]
    safe = {
        # Telegram's HTML needs <, > and & escaped (aiogram's html.quote does the same); the
        # standard library keeps this module, and the server-side export, free of aiogram.
        name: value if isinstance(value, Html) else escape(str(value), quote=False)
        for name, value in params.items()
    }
    return template.format(**safe)


def th(key: str, /, **params: Any) -> Html:
    """`t` for a fragment that goes into another text."""
    return Html(t(key, **params))


def plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian form of a noun after the number `n`: 1 день, 2 дня, 5 дней, 11 дней,
    21 день, 22 дня, 111 дней."""
    n = abs(n) % 100
    if 11 <= n <= 14:
        return many
    if n % 10 == 1:
        return one
    if 2 <= n % 10 <= 4:
        return few
    return many


def quantity(n: int, unit: str) -> str:
    """`n` with the catalogue's noun `unit` ("one|few|many") in its form: "30 дней"."""
    one, few, many = t(unit).split("|")
    return f"{n} {plural(n, one, few, many)}"
